"""`rlhf serve`: an OpenAI-compatible server with a batching engine and a durable prompt log (docs/serve.md)."""
