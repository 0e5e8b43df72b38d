"""Names of option values shared by the CLI and the runtime (kept free of heavy imports)."""

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("torch", "onnx", "onnx-int8")
QUANTIZATIONS = ("int8",)
EMBEDDING_QUANTIZATIONS = ("int8", "uint8", "binary", "ubinary")  # encode(quantize=): see finetuner.quantize
