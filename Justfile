# prefork-lab tasks. `just` is optional: every recipe is one cargo command
# you can run by hand (install just with `cargo install just`).

# Run the whole test suite as root, installing what it needs (what CI runs).
test *args:
    scripts/test {{args}}

# The default comparison: one target per mechanism, nginx, Apache and Node.js where
# installed, as many workers as CPUs, 4 steady workloads and a worker crash,
# 5 interleaved rounds, every run warmed until steady (about 8 minutes on 2
# cores; harness/BENCH.md); the report lands in results/latest/.
bench *args:
    cargo build --release --workspace
    target/release/harness bench {{args}}

# A reduced comparison (about 50 s on 2 cores).
bench-quick *args:
    cargo build --release --workspace
    target/release/harness bench --quick {{args}}

# The whole matrix: every target, workload and worker count (about an hour).
bench-full *args:
    cargo build --release --workspace
    target/release/harness bench --full {{args}}

# The false-finding rate: one target under two labels, 10 sessions.
aa-check *args:
    scripts/aa-check.sh {{args}}

# Re-render summary.json and the report of a results directory from its run files.
report dir="results/latest":
    cargo build --release -p harness
    target/release/harness report {{dir}}

# Trace one target's system calls and the kernel's wakeups (root; strace), e.g.
# `just trace shared:epoll --workers 4`; writes results/<UTC>/trace/.
trace target *args:
    cargo build --release --workspace
    target/release/harness trace {{target}} {{args}}

# Trace every twin pair (Node, nginx, Apache and their lab twins; root) into
# results/under-the-hood/ and regenerate docs/under-the-hood.md from them.
under-the-hood *args:
    cargo build --release --workspace
    target/release/harness under-the-hood {{args}}

# Build release binaries.
build:
    cargo build --release --workspace

# Start lab-server with a strategy, e.g. `just serve shared:epoll-exclusive 4`.
serve strategy="master-pass" workers="4":
    cargo run --release -p lab-server -- --strategy {{strategy}} --workers {{workers}}

# List the strategies.
strategies:
    cargo run --release -q -p lab-server -- --help

# Format and lint as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# loadgen against wrk and ab on the same nginx, pinned and unpinned, with
# syscalls per request (installs nginx-light, wrk, apache2-utils, jq, strace,
# time if missing); see loadgen/BENCHMARKS.md.
loadgen-vs-peers pairs="5" seconds="5":
    scripts/loadgen-vs-peers.sh {{pairs}} {{seconds}}

# Install what the tests and the reference servers (nginx, Apache httpd,
# Node.js) need (root; apt-get), without starting any service.
setup:
    scripts/test --setup-only

alias setup-references := setup

# Performance regression check: this build against the committed baseline
# (exit 3 on a regression); see harness/REGRESSION.md. Pass e.g.
# `--baseline-rev main` instead to compare two builds on this machine.
regress *args="--baseline results/baseline/regress.json --strategies master-pass,shared:blocking-thread,reuseport":
    cargo build --release --workspace
    target/release/harness regress {{args}}

# Fuzz the worker's request parsing or loadgen's response parsing (nightly
# toolchain and cargo-fuzz; see fuzz/README.md), e.g. `just fuzz response 600`.
fuzz target="request" seconds="600":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
    cd fuzz && cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}} -dict=dict/http.dict -print_final_stats=1

# The SSH test rig (root): network namespaces pl-srv, pl-lg1, pl-lg2 on
# 10.77.0.0/24, each with its own sshd; see scripts/NETNS.md. NETEM_DELAY=1ms
# adds a delay.
netns-up:
    scripts/netns.sh up

# Remove the SSH test rig (namespaces, bridge, sshds, whatever runs inside).
netns-down:
    scripts/netns.sh down

# Whether the SSH test rig is up (exit 0) or not (exit 1).
netns-status:
    scripts/netns.sh status
