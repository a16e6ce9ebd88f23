"""Operating the beat schedule: what beat says at start, each job's next runs and status."""
