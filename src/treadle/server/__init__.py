"""The OpenAI-compatible HTTP server (`treadle serve`). Needs the `server` extra (FastAPI, uvicorn)."""
