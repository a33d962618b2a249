#!/usr/bin/env bash
# make fuzz: builds each libFuzzer target with swiftc -sanitize=fuzzer,address and runs it
# for FUZZ_SECONDS (default 60). A crash stops with its input saved under fuzz/crashes/;
# keep it in fuzz/corpus/<target>/ once fixed, and the regression tests replay it. Then the
# grammar-driven targets of tidemark-fuzz run as long each (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
out=.build-fuzz
mkdir -p "$out" fuzz/crashes
export SWIFT_BACKTRACE=enable=no
flags=(-sanitize=fuzzer,address -parse-as-library -O -g -package-name tidemark)

# TidemarkCore as its own instrumented module, imported by the parsers.
swiftc "${flags[@]}" -emit-module -emit-library -static -module-name TidemarkCore \
  -emit-module-path "$out/TidemarkCore.swiftmodule" Sources/TidemarkCore/*.swift -o "$out/libTidemarkCore.a"

# CRC32C's instruction path (a C target in the package), with a module map for swiftc.
mkdir -p "$out/CCRC32C"
clang -O2 -g -fsanitize=fuzzer-no-link,address -I Sources/CCRC32C/include -c Sources/CCRC32C/crc32c.c -o "$out/crc32c.o"
ar rcs "$out/libCCRC32C.a" "$out/crc32c.o"
printf 'module CCRC32C {\n  header "%s"\n  export *\n}\n' "$PWD/Sources/CCRC32C/include/crc32c.h" > "$out/CCRC32C/module.modulemap"

# The storage codecs the Raft frame decoder uses, and the pure log scan recovery uses, as a module of their own.
swiftc "${flags[@]}" -I "$out/CCRC32C" -emit-module -emit-library -static -module-name TidemarkIO \
  -emit-module-path "$out/TidemarkIO.swiftmodule" Sources/TidemarkIO/Bytes.swift Sources/TidemarkIO/CRC32C.swift \
  Sources/TidemarkIO/LogScan.swift -o "$out/libTidemarkIO.a"

build() {  # name, sources…
  local name=$1; shift
  swiftc "${flags[@]}" -I "$out" -I Sources/CHTTPParser -L "$out" -lTidemarkCore "$@" -o "$out/fuzz-$name"
}
build http fuzz/HTTPDecoderFuzz.swift Sources/TidemarkNet/HTTPRequestDecoder.swift Sources/TidemarkNet/HTTPMessage.swift -lhttp_parser
build lineprotocol fuzz/LineProtocolFuzz.swift Sources/TidemarkWire/LineProtocol.swift Sources/TidemarkWire/NumberScan.swift
build restbody fuzz/RESTBodyFuzz.swift Sources/TidemarkServer/RESTBody.swift
build raftframe fuzz/RaftFrameFuzz.swift Sources/TidemarkConsensus/Transport/RaftFrame.swift Sources/TidemarkConsensus/Raft/RaftTypes.swift \
  Sources/TidemarkConsensus/Raft/RaftCodec.swift Sources/TidemarkConsensus/GroupID.swift \
  Sources/TidemarkConsensus/MultiLeader/MultiLeaderCore.swift -I "$out/CCRC32C" -lTidemarkIO -lCCRC32C
build logscan fuzz/LogScanFuzz.swift -I "$out/CCRC32C" -lTidemarkIO -lCCRC32C
build sql fuzz/SQLFuzz.swift Sources/TidemarkQuery/Lexer.swift Sources/TidemarkQuery/Parser.swift Sources/TidemarkQuery/Statement.swift

failed=0
for name in http lineprotocol restbody raftframe logscan sql; do
  # New inputs go to a scratch corpus; fuzz/corpus/<name> holds the committed seeds and past crashes.
  mkdir -p "fuzz/corpus/$name" "$out/corpus-$name"
  echo "== fuzz-$name for ${seconds}s"
  if ! "$out/fuzz-$name" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="fuzz/crashes/$name-" \
      -print_final_stats=1 "$out/corpus-$name" "fuzz/corpus/$name" > "$out/fuzz-$name.log" 2>&1; then
    failed=1
    grep -E "ERROR|SUMMARY|Fatal error" "$out/fuzz-$name.log" | head -5
    echo "fuzz-$name: CRASH; input saved under fuzz/crashes/"
  fi
  grep -E "stat::number_of_executed_units" "$out/fuzz-$name.log" || true
done
# Grammar-driven targets over whole paths (tidemark-fuzz, built by SwiftPM): random statements
# against a small engine, line protocol through the write path against a model, damaged
# segments and logs fed to recovery. Inputs come from seeds (FUZZ_SEED, else one drawn now); a finding
# is replayed with `tidemark-fuzz <target> --seed N --count 1 --verbose`.
swift build --product tidemark-fuzz > "$out/tidemark-fuzz-build.log" 2>&1 || { tail -20 "$out/tidemark-fuzz-build.log"; exit 1; }
fuzzer="$(swift build --product tidemark-fuzz --show-bin-path)/tidemark-fuzz"
seed=${FUZZ_SEED:-$(( (RANDOM << 15 | RANDOM) * 1000 ))}
# Each entry is `name:arguments`; shared-logs is a one-node cluster's regions on their shared log.
for spec in sql:sql lines:lines segments:segments logs:logs "shared-logs:logs --shared"; do
  target=${spec%%:*}
  read -r -a args <<< "${spec#*:}"
  echo "== tidemark-fuzz ${args[*]} for ${seconds}s from seed $seed"
  if ! "$fuzzer" "${args[@]}" --seconds "$seconds" --seed "$seed" --crashes fuzz/crashes > "$out/tidemark-fuzz-$target.log" 2>&1; then
    failed=1
    tail -3 "$out/tidemark-fuzz-$target.log"
    if [ -f "fuzz/crashes/$target-current-seed" ]; then
      echo "tidemark-fuzz $target: CRASH at seed $(cat "fuzz/crashes/$target-current-seed"); replay: $fuzzer ${args[*]} --seed $(cat "fuzz/crashes/$target-current-seed") --count 1 --verbose"
    fi
  fi
  tail -1 "$out/tidemark-fuzz-$target.log"
done
[ $failed = 0 ] && echo "fuzz: every target ran ${seconds}s without a crash"
exit $failed
