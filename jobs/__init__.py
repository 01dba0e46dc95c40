"""Jobs, schedules and sensors over the ETO asset graph, and the command line that runs it."""
