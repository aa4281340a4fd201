-- wrk script of the "tollgate + JSON-RPC" and "tollgate plain POST" targets of bench/run: every
-- request is the same JSON-RPC call, a POST with a small JSON body.
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x407d73d8a49eeb85d32cf465507dd71d507100c1","latest"]}'
wrk.headers["Content-Type"] = "application/json"
