#!/bin/bash
# Reference solution.
set -e
printf '%s\n' "$GREETING" > /app/out.txt
