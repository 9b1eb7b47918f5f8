#!/bin/bash
# Reference solution.
set -e
sed -i 's/localhost/db.internal/g' /app/config.ini
