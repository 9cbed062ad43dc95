"""What each CLI command does: validate its flags before any rank starts, build its config,
launch the ranks and show the result."""
