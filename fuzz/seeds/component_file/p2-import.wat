(component
  (type (;0;)
    (instance)
  )
  (import "wasi:cli/stdout@0.2.0" (instance (;0;) (type 0)))
)
