"""The quantization-recipe axis (issue 13): named recipes applied by ``ai-edge-quantizer`` to a
model's float .tflite (``catalog``), and the stage that runs every recipe on every kernel,
judges cross-kernel agreement (``K1-cross-kernel``) and re-judges C6 against today's LiteRT
(``stage``)."""
