#!/bin/bash
# Reference solution.
set -e
mkdir -p /app/project/src /app/project/tests /app/project/docs && touch /app/project/src/__init__.py
