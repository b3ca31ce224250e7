"""flashmd.md"""
