"""The pickle codec: the opcode table, argument readers/writers, decoder and encoder.

Nothing here executes a pickle; the VM (``safepickle.vm``) does, with the same
table and readers.
"""

from .decode import Op, as_buffer, decode
from .encode import encode, encode_op
from .opcodes import BY_CODE, BY_NAME, HIGHEST_PROTOCOL, OPCODES, Opcode

__all__ = ["BY_CODE", "BY_NAME", "HIGHEST_PROTOCOL", "OPCODES", "Op", "Opcode", "as_buffer", "decode",
           "encode", "encode_op"]
