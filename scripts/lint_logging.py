#!/usr/bin/env python3
"""Lint rule: no request data in logs.

Fails when a logging call (``logger.info(...)``, ``logging.warning(...)``, ``app.logger.x``,
``log.exception``…) or ``print`` in the application packages mentions ``request`` (Flask's
request: its form, files, args, headers, path, remote address) anywhere in its arguments. The
server must keep no record of who sent what; a habit is not enough, so ``make lint`` runs this.
"""

import ast
import sys
from pathlib import Path

PACKAGES = ("blagh", "crypto", "source_interface", "journalist_interface", "onion", "transfer")
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "print"
    return isinstance(func, ast.Attribute) and func.attr in LOG_METHODS


def _mentions_request(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "request" for n in ast.walk(node))


def check(root: Path) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"), str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _is_log_call(node)):
                    continue
                arguments = [*node.args, *(k.value for k in node.keywords)]
                if any(_mentions_request(a) for a in arguments):
                    problems.append(
                        f"{path.relative_to(root)}:{node.lineno}: request data in a log call"
                    )
    return problems


def main() -> int:
    problems = check(Path(__file__).resolve().parent.parent)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
