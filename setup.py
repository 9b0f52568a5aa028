"""AnQi (安骑): edge appliance and central side for e-bike safe-riding supervision."""

from pathlib import Path

from setuptools import find_packages, setup

# The core: what the shared contract (anqi_contract: event schema, wire protocol, logger, atomic writes,
# systemd notifier, config helpers, sealed evidence) needs. Both sides install it.
CORE = [
    "numpy>=1.24,<2.3",
    # pydantic: typed, validated config sections and the event schema (error paths for free).
    "pydantic>=2.7,<3",
    "pyyaml>=6",
    # PyNaCl: libsodium's sealed boxes (X25519 + XSalsa20-Poly1305) seal evidence on the device to central's
    # public key (anqi_contract.sealed); a well-kept binding of an audited library, no crypto of our own.
    "pynacl>=1.5",
]

# The device runtime (`anqi[edge]`): what a Jetson / Raspberry Pi node needs to run the daemon.
EDGE = [
    "onnxruntime>=1.17",
    # headless: the appliance has no display; same cv2 API as opencv-python without X11/Qt.
    "opencv-python-headless>=4.8",
    "paho-mqtt>=2.1,<3",
    "pyserial>=3.5",
    "gpiozero>=2.0",
    "sounddevice>=0.4.6",
    # click: subcommands, typed options and help text without hand-written argparse plumbing.
    "click>=8.1",
    # PyAV: packet-level access to H.264 so the pre-roll buffer keeps encoded data and clips are remuxed.
    "av>=12",
    # scipy: the Hungarian assignment in the tracker (linear_sum_assignment).
    "scipy>=1.10",
    # onnx: graph surgery in `anqi-edge models prepare` (SFace's unused inputs).
    "onnx>=1.15",
]

# The central office (`anqi[central]`): no camera runtime (no onnxruntime, OpenCV, PyAV, GPIO, audio).
CENTRAL = [
    "paho-mqtt>=2.1,<3",
    "click>=8.1",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "fastapi>=0.110",
    "uvicorn>=0.29",
    "psycopg[binary]>=3.1",
    # defusedxml: the SOAP endpoint parses untrusted XML (no entity expansion / external DTDs).
    "defusedxml>=0.7",
    # argon2-cffi: officers' console passwords (Argon2id, memory-hard, maintained; passlib is not).
    "argon2-cffi>=23.1",
    # python-multipart: FastAPI needs it to read the console's HTML forms.
    "python-multipart>=0.0.9",
]

setup(
    name="anqi",
    version="0.1.0",
    description="AnQi: e-bike safe-riding supervision (edge appliance + central classifier)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # alembic's versions/ folder (revision scripts) and the demo clip's folder are not regular packages:
    # named explicitly
    packages=find_packages(
        include=["anqi_contract", "anqi_tools", "edge", "edge.*", "central_sync", "central_sync.*"]
    )
    + ["central_sync.migrations.versions", "anqi_tools.demo"],
    include_package_data=True,
    package_data={
        "anqi_contract": ["py.typed"],
        "anqi_tools": ["py.typed"],
        # the MIT demo clip, its truth file and its licence notice (scripts/demo.sh's default input)
        "anqi_tools.demo": ["*"],
        "edge": ["py.typed"],
        "central_sync": ["py.typed", "migrations/*", "migrations/**/*", "*.ini", "web/content/*"],
    },
    install_requires=CORE,
    extras_require={
        "edge": EDGE,
        "central": CENTRAL,
        # Enrolment from photos on the central side (anqi_contract.faces: the edge's face models).
        "faces": ["opencv-python-headless>=4.8"],
        # bandit: the static security lint scripts/test.sh runs before the tests (issue 20)
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "httpx>=0.27",
            # the gates scripts/test.sh runs before pytest (.pre-commit-config.yaml); ruff and mypy pinned to a
            # minor version so a new release's rules or formatting do not change the verdict on the same code
            "bandit>=1.7",
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<2.5",
            "types-PyYAML>=6",
            "pre-commit>=4",
            # selenium: the web faces driven in Debian's chromium (tests/central/web)
            "selenium>=4.20",
        ],
        # Training and third-party model export only: never on the device.
        "train": ["ultralytics>=8.3", "torch", "torchvision"],
    },
    entry_points={
        "console_scripts": [
            "anqi-edge=edge.cli:main",
            "anqi-central=central_sync.cli:main",
        ]
    },
)
