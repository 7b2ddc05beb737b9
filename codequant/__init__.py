"""codequant: quantize code LLMs and measure what each bit cost."""

__version__ = "0.1.0"
