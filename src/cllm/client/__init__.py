"""The cllm client: talk to attested keys only, end-to-end encrypted, answers signature-checked."""

from cllm.client._channel import Answer, AnswerStream, PinnedKeys, apost, post, prepare

__all__ = ["Answer", "AnswerStream", "PinnedKeys", "apost", "post", "prepare"]
