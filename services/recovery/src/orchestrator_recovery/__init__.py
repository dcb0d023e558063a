"""Recovery service. Failure analysis and recovery arrive with issue 5; nothing runs here yet."""
