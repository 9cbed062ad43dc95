"""`isotune profile`: the command (command.py), what its ranks run (job.py) and what it prints."""
