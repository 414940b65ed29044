"""The vLLM backend: `backend.py` (the client), `engine.py` (load, compress, save), `worker.py` (runs under vLLM's Python)."""
