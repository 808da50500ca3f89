"""Syntax: the Lark grammar, the parser and the AST."""
from .parser import parse, parse_expression, KEYWORDS, DECLARATION_KEYWORDS

__all__ = ["parse", "parse_expression", "KEYWORDS", "DECLARATION_KEYWORDS"]
