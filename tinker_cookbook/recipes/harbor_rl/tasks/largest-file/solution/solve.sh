#!/bin/bash
# Reference solution.
set -e
ls -S /app/files | head -1 > /app/largest.txt
