"""One router per resource; each stays thin and leaves the work to the database and Temporal."""
