"""The tools, one module each, and what they share; `registry.TOOLS` lists them once. Importing a part of this
package loads no tool module: the server lists the tools from the committed contract and loads them after."""
