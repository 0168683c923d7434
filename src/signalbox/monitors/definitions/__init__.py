"""What a monitor is: YAML files -> frozen models, with every lint error at its file:line."""
