"""HumanEval -> Java translation (signatures, values, tests) and its type inference; runs at load time, when
`humaneval-java` is loaded."""
