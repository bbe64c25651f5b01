"""Multiple-choice evaluation: tasks, prompts, answer extraction, the receiver/sharer/T2T/C2C runner and reports."""
