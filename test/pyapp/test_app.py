import json
import unittest

import app


class AnswerTest(unittest.TestCase):
    def test_root(self):
        status, _, body = app.answer("/")
        self.assertEqual(status, 200)
        self.assertTrue(body.startswith(app.GREETING))

    def test_health(self):
        self.assertEqual(app.answer("/healthz")[0], 200)
        self.assertEqual(app.answer("/readyz")[0], 200)

    def test_version(self):
        status, ctype, body = app.answer("/version")
        self.assertEqual((status, ctype), (200, "application/json"))
        self.assertEqual(json.loads(body)["commit"], app.COMMIT)

    def test_unknown(self):
        self.assertEqual(app.answer("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
