"""Natural-language questions: an OpenAI-compatible ``/chat/completions`` API writes the SQL.

The provider sees the question, the table name and its columns with types — never data. What it
answers is only a proposal: it goes through the same guard and sandbox as SQL a person typed,
and the header of the result shows it. Off unless ``llm_base_url`` is set.
"""

from __future__ import annotations

import logging
import re

import aiohttp
import grpc

from agents.query.errors import QueryError

__all__ = ["QuestionWriter"]

log = logging.getLogger(__name__)

_FENCE_RE = re.compile(r"```(?:sql)?\s*(.*?)```", re.S | re.I)
_PROMPT = (
    "You write one DuckDB SQL SELECT statement that answers the user's question about the table {table}. "
    "Use only that table; no other statements, no file or table functions. Columns (name type):\n{columns}\n"
    "The `timestamp` column, when present, is the event time in UTC. Answer with the SQL only."
)


def _unavailable(message: str) -> QueryError:
    return QueryError(grpc.StatusCode.UNAVAILABLE, message, "LLM_UNAVAILABLE")


def extract_sql(text: str) -> str:
    """The SQL in a model's answer: the first fenced block if any, else the whole text."""
    m = _FENCE_RE.search(text)
    sql = (m.group(1) if m else text).strip()
    return sql.rstrip(";").strip()


class QuestionWriter:
    """Turns a question plus a table's columns into SQL through the configured provider."""

    def __init__(self, base_url: str, model: str, api_key: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def write_sql(self, question: str, table: str, columns: list[tuple[str, str]]) -> str:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": _PROMPT.format(table=table, columns="\n".join(f"{n} {t}" for n, t in columns)),
                },
                {"role": "user", "content": question},
            ],
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.post(self.url, json=body, headers=headers) as resp,
            ):
                if resp.status == 429 or resp.status >= 500:
                    raise _unavailable(
                        f"The LLM provider answered HTTP {resp.status} ({resp.reason}); try again later."
                    )
                if resp.status >= 400:
                    detail = (await resp.text())[:300]
                    raise QueryError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"The LLM provider refused the request with HTTP {resp.status}: {detail}",
                        "LLM_REFUSED",
                    )
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unavailable(
                f"The LLM provider at {self.url} could not be reached: {str(exc) or type(exc).__name__}."
            ) from None
        try:
            content = str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise _unavailable("The LLM provider's answer had no choices[0].message.content.") from None
        sql = extract_sql(content)
        if not sql:
            raise _unavailable("The LLM provider answered with no SQL.")
        log.info("Question turned into SQL", extra={"table": table, "model": self.model})
        return sql
