"""The Dormand & Prince (1980) RK5(4)7M tableau, shared by the rk45 sampler and the likelihood ODE."""

C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
#: 5th-order weights (first same as last: equal to the last row of A) and the embedded 4th order
B5 = (*A[6], 0.0)
B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
#: error weights: 5th minus 4th order
E = tuple(b5 - b4 for b5, b4 in zip(B5, B4, strict=True))
