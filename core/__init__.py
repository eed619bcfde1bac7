"""The harness's foundation, shared by ``devices``, ``models`` and ``harness``: errors, the
child processes every isolated piece of work runs in, the Keras 2 environment of those
children, and the .tflite flatbuffer reader. It imports nothing from the other folders."""
