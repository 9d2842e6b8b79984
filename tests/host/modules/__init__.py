"""Host double of the AUTOMATIC1111 WebUI v1.10.1 `modules` package, for tests only.

It reproduces the contract our scripts rely on (names, signatures, call order, the CFG denoiser's batching),
written from the v1.10.1 source and shared/WEBUI_FACTS.md, and no more. Nothing in the product imports it.
"""
