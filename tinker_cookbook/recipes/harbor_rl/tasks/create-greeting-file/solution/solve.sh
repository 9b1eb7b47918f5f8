#!/bin/bash
# Reference solution.
set -e
printf 'Hello, world!\n' > /app/hello.txt
