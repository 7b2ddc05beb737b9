"""Loading the shipped program-repair sets (Python, Java): read the versioned rows in `benchmarks/data`, join them
with their source benchmark, apply the seeded bug. Runs during `evaluate`; needs neither the sandbox nor
tree-sitter (the builders that do live in `benchmarks.build`)."""
