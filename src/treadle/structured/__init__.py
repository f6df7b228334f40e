"""Structured outputs: grammars (JSON schema, regex, choice, Lark/GBNF) compiled with llguidance and
applied as a token bitmask in the sampler, for all constrained rows of a step at once."""
