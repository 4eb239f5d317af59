#!/usr/bin/env bash
# Start a PulseAudio daemon with a 16 kHz mono null sink `vsink`; its monitor is the default
# source. Used by CI and by the audio integration tests. Safe to run twice.
set -euo pipefail
if ! pactl info >/dev/null 2>&1; then
    pulseaudio -D --exit-idle-time=-1 --system=false --disallow-exit 2>/dev/null \
        || pulseaudio -D --exit-idle-time=-1
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
fi
if ! pactl list short sinks | grep -q vsink; then
    pactl load-module module-null-sink sink_name=vsink rate=16000 channels=1 >/dev/null
fi
pactl set-default-sink vsink
pactl set-default-source vsink.monitor
pactl info | grep -E "Default (Sink|Source)"
