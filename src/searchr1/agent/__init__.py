"""searchr1.agent: the trained agent as an OpenAI-compatible service (``searchr1 serve-agent``)."""
