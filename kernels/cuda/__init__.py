"""numba.cuda twins of the CPU kernels (needs the `cuda` extra, numba-cuda).

Imported only when a model moves to the GPU: `import fastbp` never touches
numba.cuda. Kernels are built per (dtype, tile) by the factories in each file
so that tests can shrink the tile and run several blocks in the simulator
(NUMBA_ENABLE_CUDASIM=1), and a real GPU gets 16 x 16 tiles.
"""
