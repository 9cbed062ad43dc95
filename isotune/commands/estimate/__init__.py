"""`isotune estimate`: the command (command.py) and its table and plot (tables.py); the rows come from core.estimate."""
