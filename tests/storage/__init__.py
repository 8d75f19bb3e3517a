"""Tests of raytrainer.storage."""
