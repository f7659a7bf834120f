"""The rule language: field registry, validation, compiler (rule -> SQL) and explainer (rule -> why).

Modules, each readable top to bottom: registry, validation, clock, expressions, compiler, explainer.
"""
