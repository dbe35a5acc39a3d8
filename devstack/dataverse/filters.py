"""`$filter` to a parameterised SQLite `WHERE` clause, the way Dataverse reads it.

The text is parsed by odata-query's grammar (`ODataLexer`/`ODataParser`); the AST is translated by
`FilterCompiler`, a subclass of odata-query's `AstToSqliteSqlVisitor` that

- checks every identifier against the table's declared properties (unknown: 0x80060888);
- type-checks comparisons the way OData does (`Edm.Int32` vs `Edm.String` is a 400);
- compares strings case-insensitively (the `dvci` collation) and turns `contains`/`startswith`/
  `endswith` into SQL Server LIKE (`dv_like`), so `% _ [ ]` act as wildcards unless bracketed;
- binds every literal as a parameter (the base visitor inlines them, quotes unescaped in LIKE);
- follows single-valued navigation properties one level (`primarycontactid/fullname eq 'x'`).

Anything else Dataverse supports but the emulator does not (lambda operators, the
`Microsoft.Dynamics.CRM.*` query functions) is a 501, never a 500.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from odata_query import ast
from odata_query import exceptions as odata_errors
from odata_query.grammar import ODataLexer, ODataParser
from odata_query.sql.sqlite import AstToSqliteSqlVisitor

from devstack.dataverse.errors import BadRequest, NotImplementedByEmulator
from devstack.dataverse.schema import EDM_TYPES, NUMERIC_TYPES, TEXT_TYPES, ColumnType, Table
from devstack.dataverse.sqlserver import COLLATION, LIKE_FUNCTION
from devstack.dataverse.store import quote

OUTER = "t"
INNER = "r"
MAX_FILTER_LENGTH = 32_000

# What an expression evaluates to: a column type, or the kind of a literal / boolean expression.
ExprType = str
BOOLEAN = "boolexpr"
NULL = "null"
STRING_LITERAL = "string-literal"
LIST = "list"

_OPERATOR_KINDS = {
    ast.Eq: "Equal",
    ast.NotEq: "NotEqual",
    ast.Gt: "GreaterThan",
    ast.GtE: "GreaterThanOrEqual",
    ast.Lt: "LessThan",
    ast.LtE: "LessThanOrEqual",
    ast.In: "In",
}
_LIKE_FUNCTIONS = {"contains": ("%", "%"), "startswith": ("", "%"), "endswith": ("%", "")}
_LITERAL_EDM = {
    STRING_LITERAL: "Edm.String",
    NULL: "null",
    BOOLEAN: "Edm.Boolean",
    LIST: "Collection",
}
GUID_FORMAT_MESSAGE = (
    "Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."
)


@dataclass
class CompiledFilter:
    sql: str
    params: list[Any] = field(default_factory=list)


def parse(text: str) -> ast._Node:
    """The AST of a `$filter` expression, or a 400 with ODL's wording of what is wrong."""
    expression = text.strip()
    if not expression:
        raise BadRequest(f"Expression expected at position 0 in '{text}'.")
    if len(expression) > MAX_FILTER_LENGTH:
        raise BadRequest("The $filter expression is too long.")
    if expression.count("'") % 2:
        # Quotes only occur in literals and double inside them, so an odd count means one
        # literal never ends (Dataverse: 'O'Bryan' instead of 'O''Bryan').
        raise BadRequest(
            f"There is an unterminated literal at position {len(expression)} in '{expression}'."
        )
    try:
        node: ast._Node = ODataParser().parse(ODataLexer().tokenize(expression))
    except odata_errors.TokenizingException as exc:
        position = getattr(exc.token, "index", 0)
        char = expression[position : position + 1]
        raise BadRequest(
            f"Syntax error: character '{char}' is not valid at position {position} "
            f"in '{expression}'."
        ) from None
    except odata_errors.ParsingException as exc:
        position = len(expression) if exc.eof or exc.token is None else exc.token.index
        raise BadRequest(f"Syntax error at position {position} in '{expression}'.") from None
    except odata_errors.UnknownFunctionException as exc:
        raise BadRequest(
            f"An unknown function with name '{exc.function_name}' was found. This may also be "
            "a function import or a key lookup on a navigation property, which is not allowed."
        ) from None
    except odata_errors.ArgumentCountException as exc:
        raise _no_signature(exc.function_name) from None
    except (odata_errors.ODataException, ValueError, RecursionError):
        raise BadRequest(f"Syntax error in '{expression}'.") from None
    if node is None:
        raise BadRequest(f"Expression expected at position 0 in '{expression}'.")
    return node


def compile_filter(text: str, table: Table, tables: Mapping[str, Table]) -> CompiledFilter:
    node = parse(text)
    compiler = FilterCompiler(table, tables)
    try:
        kind = compiler.type_of(node)
        property_alone = isinstance(node, (ast.Identifier, ast.Attribute))
        if kind != BOOLEAN and not (kind == "bool" and property_alone):
            raise BadRequest("The $filter expression must evaluate to a single boolean value.")
        sql = compiler.condition(node)
    except RecursionError:
        raise BadRequest("The $filter expression is nested too deeply.") from None
    except odata_errors.ODataException:
        raise BadRequest(f"Syntax error in '{text.strip()}'.") from None
    return CompiledFilter(sql, compiler.params)


def _no_signature(name: str) -> BadRequest:
    return BadRequest(
        f"No function signature for the function with name '{name}' matches the specified "
        f"arguments. The function signatures considered are: {name}(Edm.String Nullable=true, "
        "Edm.String Nullable=true)."
    )


def _edm(kind: ExprType) -> str:
    if kind in EDM_TYPES:
        return EDM_TYPES[kind]
    return _LITERAL_EDM.get(kind, kind)


class FilterCompiler(AstToSqliteSqlVisitor):
    """AST -> SQL over the table aliased `t`; literals land in `params`, in order."""

    def __init__(self, table: Table, tables: Mapping[str, Table]) -> None:
        super().__init__(table_alias=OUTER)
        self.table = table
        self.tables = tables
        self.params: list[Any] = []

    # --- types --------------------------------------------------------------------------------

    def type_of(self, node: ast._Node) -> ExprType:
        if isinstance(node, ast.Identifier):
            return self._property(node)[1]
        if isinstance(node, ast.Attribute):
            return self._navigation(node)[2]
        if isinstance(node, ast.Null):
            return NULL
        if isinstance(node, ast.String):
            return STRING_LITERAL
        if isinstance(node, ast.GUID):
            return "guid"
        if isinstance(node, ast.Integer):
            return "int" if abs(int(node.val)) < 2**31 else "bigint"
        if isinstance(node, ast.Float):
            return "decimal"
        if isinstance(node, ast.Boolean):
            return "bool"
        if isinstance(node, (ast.DateTime, ast.Date)):
            return "datetime"
        if isinstance(node, ast.List):
            return LIST
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            return BOOLEAN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return BOOLEAN
        if isinstance(node, ast.Call) and node.func.name in _LIKE_FUNCTIONS:
            return BOOLEAN
        return self._unsupported(node)

    def _unsupported(self, node: ast._Node) -> NoReturn:
        if isinstance(node, ast.Call):
            if node.func.namespace:
                name = ".".join((*node.func.namespace, node.func.name))
                raise NotImplementedByEmulator(f"the query function '{name}'")
            raise BadRequest(f"The function '{node.func.name}' is not supported.")
        if isinstance(node, ast.CollectionLambda):
            raise NotImplementedByEmulator("lambda operators (any/all) in $filter")
        if isinstance(node, ast.BinOp):
            raise BadRequest("Arithmetic operators are not supported in $filter.")
        if isinstance(node, ast.UnaryOp):
            raise BadRequest("The unary operator is not supported here.")
        raise BadRequest("Syntax error in $filter.")

    # --- properties ---------------------------------------------------------------------------

    def _property(self, node: ast.Identifier) -> tuple[str, ColumnType]:
        kind = None if node.namespace else self.table.property_type(node.name)
        if kind is None:
            if self.table.navigation(node.name) and not node.namespace:
                raise BadRequest(
                    f"The navigation property '{node.name}' can only be compared through one "
                    f"of its properties, for example '{node.name}/<property>'."
                )
            full_name = ".".join((*node.namespace, node.name))
            raise BadRequest.unknown_property(self.table.logical_name, full_name)
        sql = f"{OUTER}.{quote(node.name)}"
        return (f"{sql} COLLATE {COLLATION}" if kind in TEXT_TYPES else sql), kind

    def _navigation(self, node: ast.Attribute) -> tuple[str, str, ColumnType]:
        owner = node.owner
        if not isinstance(owner, ast.Identifier) or owner.namespace:
            raise NotImplementedByEmulator("paths through more than one navigation property")
        found = self.table.navigation(owner.name)
        if found is None:
            raise BadRequest.unknown_property(self.table.logical_name, owner.name)
        lookup, target_set = found
        target = self.tables[target_set]
        kind = target.property_type(node.attr)
        if kind is None:
            raise BadRequest.unknown_property(target.logical_name, node.attr)
        sql = (
            f"(SELECT {INNER}.{quote(node.attr)} FROM {quote(target.entity_set)} {INNER} "  # noqa: S608
            f"WHERE {INNER}.{quote(target.key)} = {OUTER}.{quote(lookup.column)} "
            f"AND {OUTER}.{quote(lookup.type_column)} = '{target.entity_set}')"
        )
        return (f"{sql} COLLATE {COLLATION}" if kind in TEXT_TYPES else sql), owner.name, kind

    def visit_Identifier(self, node: ast.Identifier) -> str:
        return self._property(node)[0]

    def visit_Attribute(self, node: ast.Attribute) -> str:
        return self._navigation(node)[0]

    # --- literals (always parameters) ---------------------------------------------------------

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def visit_String(self, node: ast.String) -> str:
        return self._param(node.val)

    def visit_Integer(self, node: ast.Integer) -> str:
        value = int(node.val)
        if abs(value) >= 2**63:
            raise BadRequest(f"The literal '{node.val}' is out of range.")
        return self._param(value)

    def visit_Float(self, node: ast.Float) -> str:
        return self._param(float(node.val))

    def visit_Boolean(self, node: ast.Boolean) -> str:
        return self._param(1 if node.py_val else 0)

    def visit_GUID(self, node: ast.GUID) -> str:
        return self._param(node.val.lower())

    def visit_DateTime(self, node: ast.DateTime) -> str:
        try:
            value = node.py_val
        except ValueError:
            raise BadRequest(
                f"The literal '{node.val}' is not a valid Edm.DateTimeOffset."
            ) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return self._param(value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def visit_Date(self, node: ast.Date) -> str:
        try:
            day = node.py_val
        except ValueError:
            raise BadRequest(f"The literal '{node.val}' is not a valid Edm.Date.") from None
        return self._param(f"{day.isoformat()}T00:00:00Z")

    def visit_Null(self, node: ast.Null) -> str:
        return "NULL"

    def visit_List(self, node: ast.List) -> str:
        return "(" + ", ".join(self.visit(item) for item in node.val) + ")"

    # --- boolean structure --------------------------------------------------------------------

    def condition(self, node: ast._Node) -> str:
        """SQL for a node that must be boolean; a bool property alone means `eq true`."""
        kind = self.type_of(node)
        if kind == "bool" and isinstance(node, (ast.Identifier, ast.Attribute)):
            return f"({self.visit(node)} = 1)"
        if kind != BOOLEAN:
            raise BadRequest("The operands of a logical operator must be boolean expressions.")
        return str(self.visit(node))

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        # a chain of one operator becomes one flat list: SQLite's parser has a small stack
        operands: list[ast._Node] = []
        pending: list[ast._Node] = [node]
        while pending:
            item = pending.pop()
            if isinstance(item, ast.BoolOp) and type(item.op) is type(node.op):
                pending += [item.right, item.left]
            else:
                operands.append(item)
        op = " AND " if isinstance(node.op, ast.And) else " OR "
        return "(" + op.join(self.condition(o) for o in operands) + ")"

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        if not isinstance(node.op, ast.Not):
            self._unsupported(node)
        return f"(NOT {self.condition(node.operand)})"

    def visit_BinOp(self, node: ast.BinOp) -> str:
        self._unsupported(node)

    def visit_CollectionLambda(self, node: ast.CollectionLambda) -> str:
        self._unsupported(node)

    # --- comparisons --------------------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare) -> str:
        op_kind = _OPERATOR_KINDS.get(type(node.comparator), "Equal")
        left_kind, right_kind = self.type_of(node.left), self.type_of(node.right)
        if isinstance(node.comparator, ast.In):
            return self._compare_in(node, left_kind)
        if NULL in (left_kind, right_kind):
            if op_kind not in ("Equal", "NotEqual") or left_kind == right_kind:
                self._incompatible(left_kind, right_kind, op_kind)
            operand = node.right if left_kind == NULL else node.left
            test = "IS NULL" if op_kind == "Equal" else "IS NOT NULL"
            return f"({self._operand(operand, None)} {test})"
        self._check_compatible(left_kind, right_kind, op_kind)
        left = self._operand(node.left, right_kind)
        right = self._operand(node.right, left_kind)
        return f"({left} {self.visit(node.comparator)} {right})"

    def _compare_in(self, node: ast.Compare, left_kind: ExprType) -> str:
        if not isinstance(node.right, ast.List) or not node.right.val:
            raise BadRequest("The 'in' operator needs a non-empty list of values.")
        for item in node.right.val:
            self._check_compatible(left_kind, self.type_of(item), "In")
        left = self._operand(node.left, None)
        items = ", ".join(self._operand(item, left_kind) for item in node.right.val)
        return f"({left} IN ({items}))"

    def _operand(self, node: ast._Node, counterpart: ExprType | None) -> str:
        """SQL for one side; a string literal compared with a GUID column becomes a GUID."""
        if counterpart == "guid" and isinstance(node, ast.String):
            try:
                return self._param(str(uuid.UUID(node.val)))
            except ValueError:
                raise BadRequest(GUID_FORMAT_MESSAGE) from None
        return str(self.visit(node))

    def _check_compatible(self, left: ExprType, right: ExprType, op_kind: str) -> None:
        if {left, right} == {"guid", STRING_LITERAL}:
            return  # Dataverse reads a quoted GUID: _ownerid_value eq '<guid>'
        if _category(left) != _category(right) or {left, right} & {BOOLEAN, LIST}:
            self._incompatible(left, right, op_kind)
        if left == "bool" and op_kind not in ("Equal", "NotEqual", "In"):
            self._incompatible(left, right, op_kind)

    def _incompatible(self, left: ExprType, right: ExprType, op_kind: str) -> NoReturn:
        raise BadRequest(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{_edm(left)}' and '{_edm(right)}' for operator kind '{op_kind}'."
        )

    # --- string functions ---------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> str:
        name = node.func.name
        if node.func.namespace or name not in _LIKE_FUNCTIONS:
            self._unsupported(node)
        if len(node.args) != 2:
            raise _no_signature(name)
        subject, needle = node.args
        if self.type_of(subject) not in TEXT_TYPES:
            raise _no_signature(name)
        prefix, suffix = _LIKE_FUNCTIONS[name]
        if isinstance(needle, ast.String):
            pattern = self._param(f"{prefix}{needle.val}{suffix}")
        elif self.type_of(needle) in TEXT_TYPES:
            pattern = f"'{prefix}' || {self.visit(needle)} || '{suffix}'"
        else:
            raise _no_signature(name)
        return f"({LIKE_FUNCTION}({self.visit(subject)}, {pattern}) = 1)"


def _category(kind: ExprType) -> str:
    if kind in TEXT_TYPES or kind == STRING_LITERAL:
        return "text"
    if kind in NUMERIC_TYPES:
        return "number"
    return kind
