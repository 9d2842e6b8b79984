"""Test-only helpers: tiny real-class models, k-diffusion import, the WebUI host double lives in tests/host."""
