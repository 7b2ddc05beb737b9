"""Build time only: the bug operators (`mutations`, `java_mutations`) and the repair-set builders that run the
candidates in the sandbox (`scripts/build_repair.py`, `scripts/build_java_repair.py`). No loader imports this
package (tests/test_layering.py checks it), so loading a benchmark needs neither tree-sitter nor the sandbox."""
