"""flashmd.models"""
