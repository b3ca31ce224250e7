"""flashmd.ase"""
