"""Jobs: the durable queue, escalation, timer starts and the ticker."""
