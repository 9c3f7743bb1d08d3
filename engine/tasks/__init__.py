"""Human tasks: the task service and attachments."""
