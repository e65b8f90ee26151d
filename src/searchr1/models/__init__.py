"""searchr1.models"""
