#!/bin/sh
# Removes what compiling better-sqlite3 from source leaves beside its addon
# (object files, the static SQLite library, the amalgamation's sources: about
# 27 MB), keeping only build/Release/better_sqlite3.node, which is all it loads
# at run time. The Dockerfile runs it on the runtime image's node_modules;
# test/container/ runs it on a copy. A prebuilt download has nothing to remove.
# Usage: scripts/prune-native-build.sh [node_modules folder, default ./node_modules]
set -eu
package="${1:-node_modules}/better-sqlite3"
if [ ! -f "$package/build/Release/better_sqlite3.node" ]; then
  echo "prune-native-build: $package/build/Release/better_sqlite3.node not found" >&2
  exit 1
fi
find "$package/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
find "$package/build/Release" -mindepth 1 -maxdepth 1 ! -name better_sqlite3.node -exec rm -rf {} +
rm -rf "$package/deps" "$package/src" "$package/binding.gyp"
