"""An exact arithmetic process verifier over token ids, in pure JAX.

A reasoning step such as "16 - 3 - 4 = 9 eggs" is checked by re-evaluating each equation's left side
and comparing it with the number written on the right. The checker is a finite-state machine run by
`lax.scan` over a fixed-length array of token ids, so it runs under `jit`, `vmap` (one step per particle)
and inside other scans, with no host callback: the tokenizer is consulted once, when the tables mapping
each token id to a class and a value are built.

The rules, chosen to match how a small model writes arithmetic (its tokenizer splits every digit into its
own token, and spaces and operators come as " =", " +", " -", " *", " /", " x", " ×", or bare):

- A number is a run of digit tokens, optionally with one "." followed by digits ("2.5"). A "," directly
  between digits is a thousands separator and is skipped ("1,000" is 1000; "3,4" is 34). A "." or ","
  not followed by a digit ends the number and then acts as punctuation (a reset, below): "= 18." closes 18.
- Operators are + - * / (also "x", "×" and the Unicode minus "−" when they are tokens of their own), with
  * and / before + and -, left to right. A "-" where an operand is expected is a unary minus ("= -3").
- Spaces, tabs and "$" are skipped; they end a number but nothing else ("$4 - $3 = $1" is checked).
- Any other token (a word, a parenthesis, a line break, punctuation, a special token) resets the parser:
  only what follows the last such token can form an equation, so "so 3 + 4 = 7" is checked while
  "3 apples + 4 apples = 7" is not; "(2 + 3) * 4 = 20" is not checked either.
- An equation is counted when the number after "=" ends (at any token that cannot continue it, or at the
  end of the array). Its left side must hold at least one binary operator, so "x = 5" and restatements
  like "18 = 18" are not counted. That right-hand number also starts the next expression, so the chain
  "5 + 3 = 8 - 2 = 6" counts two equations. Two numbers with no operator between them ("5 3") start a new
  expression at the second.
- The right side c is correct when |L - c| <= 1e-4 max(1, |c|) (float32 arithmetic), or, if c is written
  with d >= 1 decimals, when |L - c| <= 0.5 10^-d + 1e-4 max(1, |c|): a value rounded to the decimals
  written is accepted ("7 / 3 = 2.33" is correct, "7 / 3 = 2.4" is wrong), while an integer right side must
  be exact ("7 / 2 = 3" is wrong). A division by zero makes the equation wrong.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ArithmeticVerifier"]

# Token classes.
OTHER, SPACE, DIGIT, POINT, COMMA, OP, EQUALS = range(7)
# Operator codes, the value of an OP token.
ADD, SUB, MUL, DIV = 1, 2, 3, 4

_OPERATORS = {"+": ADD, "-": SUB, "−": SUB, "*": MUL, "x": MUL, "×": MUL, "/": DIV}


_DIGITS_PROBE = "12 + 305 = 317 and 4.75 * 8 = 38"  # numbers as a model writes them


def classify(text: str) -> tuple[int, int]:
    """The (class, value) of a token that decodes to `text`. Leading spaces are allowed before an
    operator, "=" or "$" because the tokenizer glues them on ("␣+", "␣="); a digit, "." or "," must
    stand alone to be part of a number, as the tokenizer always splits digits."""
    if len(text) == 1 and text in "0123456789":
        return DIGIT, int(text)
    if text == ".":
        return POINT, 0
    if text == ",":
        return COMMA, 0
    bare = text.lstrip(" ")
    if (text and not text.strip(" \t")) or bare == "$":
        return SPACE, 0
    if bare in _OPERATORS:
        return OP, _OPERATORS[bare]
    if bare == "=":
        return EQUALS, 0
    return OTHER, 0


class _State(NamedTuple):
    in_num: jax.Array    # reading a number's digits
    num: jax.Array       # its magnitude so far
    frac: jax.Array      # place value of the next decimal digit; 1 before the decimal point
    decimals: jax.Array  # decimal digits read
    pending: jax.Array   # POINT or COMMA right after digits (a separator only if a digit follows), or 0
    neg: jax.Array       # a unary minus before the number
    have: jax.Array      # a complete operand waits for an operator or "="
    acc: jax.Array       # sum of the finished additive terms
    sign: jax.Array      # sign of the term being built
    term: jax.Array      # the term being built (a product or quotient)
    mul: jax.Array       # MUL or DIV waiting for its right operand within the term, or 0
    ops: jax.Array       # binary operators in the expression
    rhs: jax.Array       # after "=", before the right-hand number has ended
    lhs_ok: jax.Array    # the left side of that "=" is a checkable expression
    lhs: jax.Array       # its value
    n_correct: jax.Array
    n_wrong: jax.Array


def _initial() -> _State:
    f, i, b = jnp.float32, jnp.int32, jnp.bool_
    return _State(b(False), f(0), f(1), i(0), i(0), b(False), b(False), f(0), f(1), f(0), i(0), i(0),
                  b(False), b(False), f(0), i(0), i(0))


def _typed(s: _State) -> _State:
    """`s` with every field an array of its initial dtype, as `lax.switch` and `lax.scan` require."""
    return jax.tree.map(lambda v, t: jnp.asarray(v, t.dtype), s, _initial())


def _reset(s: _State, val=None) -> _State:
    return _initial()._replace(n_correct=s.n_correct, n_wrong=s.n_wrong)


def _skip(s: _State, val) -> _State:
    return s


def _start_number(s: _State, val) -> _State:
    s = jax.tree.map(lambda a, b: jnp.where(s.have, a, b), _reset(s), s)  # "5 3": a new expression
    return s._replace(in_num=True, num=val.astype(jnp.float32), frac=1.0, decimals=0, pending=0)


def _continue_number(s: _State, val) -> _State:
    decimal = s.frac < 1
    d = val.astype(jnp.float32)
    return s._replace(num=jnp.where(decimal, s.num + d * s.frac, s.num * 10 + d),
                      frac=jnp.where(decimal, s.frac * 0.1, s.frac), decimals=s.decimals + decimal, pending=0)


def _point(s: _State, val) -> _State:
    return s._replace(pending=POINT, frac=0.1)


def _comma(s: _State, val) -> _State:
    return s._replace(pending=COMMA)


def _binary(s: _State, val) -> _State:
    additive = val <= SUB
    return s._replace(acc=jnp.where(additive, s.acc + s.sign * s.term, s.acc),
                      sign=jnp.where(additive, jnp.where(val == SUB, -1.0, 1.0), s.sign),
                      mul=jnp.where(additive, 0, val), ops=s.ops + 1, have=False)


def _unary_minus(s: _State, val) -> _State:
    return s._replace(neg=True)


def _equals(s: _State, val) -> _State:
    return _reset(s)._replace(rhs=True, lhs_ok=s.have & (s.ops > 0), lhs=s.acc + s.sign * s.term)


_BRANCHES = [lambda s, v, f=f: _typed(f(s, v)) for f in
             (_reset, _skip, _start_number, _continue_number, _point, _comma, _binary, _unary_minus, _equals)]


def _step(s: _State, cls: jax.Array, val: jax.Array) -> _State:
    digit = cls == DIGIT
    cont = s.in_num & (digit | ((cls == POINT) | (cls == COMMA)) & (s.pending == 0) & (s.frac == 1))

    # A number this token does not continue is complete: check it if it is a right side, then fold it
    # into the expression (a right side starts the next expression on its own).
    close = s.in_num & ~cont
    x = jnp.where(s.neg, -s.num, s.num)
    rounding = jnp.where(s.decimals > 0, 0.5 * jnp.power(10.0, -s.decimals.astype(jnp.float32)), 0.0)
    right = jnp.abs(s.lhs - x) <= 1e-4 * jnp.maximum(1.0, jnp.abs(x)) + rounding
    counted = close & s.rhs & s.lhs_ok
    term = jnp.where(s.mul == MUL, s.term * x, jnp.where(s.mul == DIV, s.term / x, x))
    closed = _typed(s._replace(
        in_num=False, neg=False, pending=0, have=True, mul=0, rhs=False, lhs_ok=False,
        term=jnp.where(s.rhs, x, term), acc=jnp.where(s.rhs, 0.0, s.acc), sign=jnp.where(s.rhs, 1.0, s.sign),
        ops=jnp.where(s.rhs, 0, s.ops),
        n_correct=s.n_correct + (counted & right), n_wrong=s.n_wrong + (counted & ~right)))
    # A "." or "," after the number that no digit followed was punctuation after all: a reset.
    after = jax.tree.map(lambda a, b: jnp.where(s.pending != 0, a, b), _reset(closed), closed)
    s = jax.tree.map(lambda a, b: jnp.where(close, a, b), after, s)

    branch = jnp.select(
        [cls == SPACE, digit & cont, digit, (cls == POINT) & cont, (cls == COMMA) & cont,
         (cls == OP) & s.have, (cls == OP) & (val == SUB) & ~s.neg, cls == EQUALS],
        [1, 3, 2, 4, 5, 6, 7, 8], 0)
    return jax.lax.switch(branch, _BRANCHES, s, val)


class ArithmeticVerifier(eqx.Module):
    """Counts the correct and wrong equations of a reasoning step given as token ids (rules above)."""

    token_class: jax.Array  # (vocab,) int32: OTHER, SPACE, DIGIT, POINT, COMMA, OP or EQUALS
    token_value: jax.Array  # (vocab,) int32: a digit's value, an operator's code, else 0

    @classmethod
    def from_tokenizer(cls, tokenizer) -> ArithmeticVerifier:
        """The tables for `tokenizer`, from each token decoded on its own (special tokens by their text,
        so that they count as words). A tokenizer that does not write every digit as a token of its own
        is refused: its numbers would read as words, no equation would ever be checked, and every step
        would get r = 1 without a word said."""
        merged = sorted({piece for piece in (tokenizer.decode([i]) for i in tokenizer.encode(_DIGITS_PROBE))
                         if sum(c.isdigit() for c in piece) and classify(piece)[0] != DIGIT})
        if merged:
            raise ValueError(
                f"this tokenizer does not split numbers into one token per digit (it wrote {_DIGITS_PROBE!r} with "
                f"the tokens {merged[:6]}), so the arithmetic verifier would see no number and check no equation; "
                "use a model whose tokenizer splits digits (Llama 3, SmolLM2, Qwen2), or score steps on their "
                "decoded text (a Python reward with RemoteReasoner, or a potential of your own)")
        table = np.array([classify(tokenizer.decode([i], skip_special=False)) for i in range(tokenizer.vocab_size)],
                         np.int32)
        return cls(jnp.asarray(table[:, 0]), jnp.asarray(table[:, 1]))

    def check(self, tokens: jax.Array, closed: bool | jax.Array = True) -> tuple[jax.Array, jax.Array]:
        """(n_correct, n_wrong) int32 scalars: the equations "expr = c" in `tokens` (int32, any length,
        padded with a word-like token such as EOS) whose left side equals / differs from c.

        `closed=False` says the text was cut off (a step that hit its token budget): a number still
        being read at the end may be incomplete ("= 14" of "= 143"), so its equation is not counted.
        """
        tokens = jnp.asarray(tokens, jnp.int32)

        def step(s, class_value):
            return _step(s, *class_value), None

        s, _ = jax.lax.scan(step, _initial(), (self.token_class[tokens], self.token_value[tokens]))
        ended = _step(s, jnp.int32(OTHER), jnp.int32(0))  # the end closes a number still being read
        s = jax.tree.map(lambda a, b: jnp.where(closed, a, b), ended, s)
        return s.n_correct, s.n_wrong

    def check_text(self, tokenizer, text: str, closed: bool = True) -> tuple[int, int]:
        """`check` on the tokens of `text` (for text from HTTP engines, and tests). The tokens are padded
        with EOS to a multiple of 64 so that texts of similar length share one compilation; an open
        text (`closed=False`) gets no padding, which would close it."""
        ids = tokenizer.encode(text)
        if closed:
            ids = ids + [tokenizer.eos_id] * (-len(ids) % 64)
        n_correct, n_wrong = _check(self, jnp.asarray(ids, jnp.int32), closed)
        return int(n_correct), int(n_wrong)


_check = jax.jit(ArithmeticVerifier.check)
