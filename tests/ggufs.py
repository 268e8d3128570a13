"""A copy of the packaged SmolLM2 GGUF with another chat template, for tests of tool use.

SmolLM2's own template shows the model no tools, so ``cllm serve`` refuses tools for it; a model
whose template renders tools (Hermes-style, as Qwen's and SmolLM3's do) is made here by
rewriting one metadata string of the GGUF (format: github.com/ggml-org/ggml docs/gguf.md,
version 3): header, key/value pairs, tensor infos, padding to ``general.alignment``, then the
tensor data, whose offsets are relative to its own start and so unchanged.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Final

__all__ = ["TOOLS_TEMPLATE", "with_chat_template"]

# ChatML with tools in the system turn and Hermes <tool_call>/<tool_response> blocks.
TOOLS_TEMPLATE: Final = (
    "{%- if tools %}<|im_start|>system\n"
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "You may call functions. Signatures in <tools></tools>:\n<tools>"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n"
    'Reply with <tool_call>{"name": <name>, "arguments": <args>}</tool_call>.<|im_end|>\n'
    "{%- elif messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{{ message.content }}\n</tool_response><|im_end|>\n"
    "{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n"
    "{%- if message.content %}{{ message.content }}{% endif %}"
    "{%- for call in message.tool_calls %}\n<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}'
    "\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)

_STRING: Final = 8
_ARRAY: Final = 9
_SCALARS: Final = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _read(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF")
    return data


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", _read(f, 4))[0])


def _u64(f: BinaryIO) -> int:
    return int(struct.unpack("<Q", _read(f, 8))[0])


def _string(f: BinaryIO) -> bytes:
    return _read(f, _u64(f))


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        _string(f)
    elif kind == _ARRAY:
        inner, count = _u32(f), _u64(f)
        if inner in _SCALARS:
            _read(f, _SCALARS[inner] * count)
        else:
            for _ in range(count):
                _skip_value(f, inner)
    else:
        _read(f, _SCALARS[kind])


def _pack_string(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def with_chat_template(source: Path, target: Path, template: str) -> Path:
    """``source`` with ``tokenizer.chat_template`` set to ``template``, written to ``target``."""
    alignment = 32
    with source.open("rb") as f:
        if _read(f, 4) != b"GGUF" or _u32(f) != 3:
            raise ValueError("not a GGUF version 3 file")
        tensors, pairs = _u64(f), _u64(f)
        out: list[bytes] = []
        replaced = False
        for _ in range(pairs):
            key = _string(f)
            kind = _u32(f)
            start = f.tell()
            _skip_value(f, kind)
            end = f.tell()
            if key == b"tokenizer.chat_template":
                value = _STRING, _pack_string(template.encode())
                replaced = True
            else:
                f.seek(start)
                value = kind, _read(f, end - start)
                if key == b"general.alignment":
                    alignment = int(struct.unpack("<I", value[1])[0])
            out.append(_pack_string(key) + struct.pack("<I", value[0]) + value[1])
        if not replaced:
            key = b"tokenizer.chat_template"
            value = _STRING, _pack_string(template.encode())
            out.append(_pack_string(key) + struct.pack("<I", value[0]) + value[1])
            pairs += 1
        infos_start = f.tell()
        for _ in range(tensors):
            _string(f)
            dims = _u32(f)
            _read(f, 8 * dims + 4 + 8)
        infos_end = f.tell()
        f.seek(infos_start)
        infos = _read(f, infos_end - infos_start)
        data_start = -(-infos_end // alignment) * alignment
        f.seek(data_start)
        head = b"GGUF" + struct.pack("<IQQ", 3, tensors, pairs) + b"".join(out) + infos
        with target.open("wb") as g:
            g.write(head)
            g.write(b"\0" * (-len(head) % alignment))
            while chunk := f.read(1 << 20):
                g.write(chunk)
    return target
